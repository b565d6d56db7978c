"""`geoverdict demo`: the whole system once on real servers (run.py), with photos the model
never trained on (photos.py), a summary of what came back (summary.py) and an offline map of
the verdicts (verdict_map.py)."""
