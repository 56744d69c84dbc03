"""What edgepack reads from YAML: targets, profiles, the catalog of both, the project file."""
