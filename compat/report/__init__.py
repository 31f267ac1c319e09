"""Report: checks that turn a machine + profile into findings, and their text/JSON rendering."""
