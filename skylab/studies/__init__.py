"""Studies of trials already run: ablations (which kept changes mattered) and confirmations at a
longer budget (does a win hold). Each builds its trials as jobs the loop trains without judging
them as candidates, and reads their notes back into a table with pure functions."""
