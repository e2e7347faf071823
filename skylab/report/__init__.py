"""What the researcher reads: the history table and the HTML report, built from the notes."""
