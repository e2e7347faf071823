"""The trial store: every trial a commit, every result a note; sharing with teammates.

The bottom layer above `errors`: it imports no other Skylab package.
"""
