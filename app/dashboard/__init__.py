"""The dashboard ("the mothership"): ingest, aggregation, history and live push."""
