"""What both packages share about runs and outputs: atomic files, storage checks, one writer
per run directory, graceful stop, console messages, the paper's
numbers and the comparison of results with them (`python -m report.compare`)."""
