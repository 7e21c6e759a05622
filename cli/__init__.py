"""The single ``m2grl`` command-line entry point."""
