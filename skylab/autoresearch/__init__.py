"""Bringing an autoresearch run into Skylab: its `results.tsv` imported as trials (`results_tsv.py`
reads, `importer.py` writes through the store). `skylab init` adopting the checkout itself is
`experiment/adopt.py`."""
