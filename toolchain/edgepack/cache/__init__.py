"""The content-addressed cache: the store of finished builds and build steps, and their keys."""
