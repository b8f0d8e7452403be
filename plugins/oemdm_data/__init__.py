"""Placeholder: components arrive with their issue."""
