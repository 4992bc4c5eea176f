"""Data ingestion: raw subband groups to Measurement Sets, sky models, photometry."""
