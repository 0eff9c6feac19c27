"""SNS-aware text handling: protected spans, platform markup profiles, language id and output checks."""
