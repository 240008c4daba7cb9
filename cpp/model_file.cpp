// (filled in by the GGUF loader)
