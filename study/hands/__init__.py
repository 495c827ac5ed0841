"""Hand landmarks (MediaPipe's models run by LiteRT), hand crops and the landmark classifier: issue 18, in progress."""
