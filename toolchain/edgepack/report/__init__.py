"""The build report: its model, reading it back, and its markdown, HTML and SVG renderings."""
