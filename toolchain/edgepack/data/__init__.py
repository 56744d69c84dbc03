"""Data a build feeds models: datasets, image folders, preprocessing, tensor layouts."""
