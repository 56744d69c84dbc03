"""Measuring model files as an app would run them: on this host, on devices, side by side."""
