"""What both packages share about their outputs: atomic files, console messages, the paper's
numbers and the comparison of results with them (`python -m report.compare`)."""
