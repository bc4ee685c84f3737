"""Reports: the study's figures and its self-contained HTML page."""
