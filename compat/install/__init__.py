"""Planner and installer (issue 7): `python -m compat plan` / `python -m compat install`; docs/installer.md."""
