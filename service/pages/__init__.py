"""Pages for people: the console (and the visitor pages: QR, preview, password)."""
