"""The build report: its model, reading it back, and rendering it as markdown, HTML and terminal tables."""
