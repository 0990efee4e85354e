"""The command-line layer's machinery: flags generated from the option groups, and precision names.

``sftune.cli`` and the ``*/commands.py`` modules use it; no library module imports it (nor the CLI).
"""
