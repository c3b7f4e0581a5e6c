"""Sources: thin adapters that turn their input into RawRecords, run the pipeline and commit what it returns.

Only sources know about checkpoints; nothing below the pipeline knows which source it runs under.
"""
