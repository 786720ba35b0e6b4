"""Imports every experiment module so that each registers itself.

Add one line per experiment module; a module that fails to import raises here (loudly).
"""
