"""The experiment: its files, its config (experiment.toml), its templates and `.skylab` layout.

Above `store`; below runners, strategies, the loop and the report.
"""
