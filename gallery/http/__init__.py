"""What pages and the API share about HTTP requests: rate limits and body-size limits."""
