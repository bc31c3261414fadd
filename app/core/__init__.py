"""The wire core both sides import: the sample format, summaries, histograms and route templates."""
