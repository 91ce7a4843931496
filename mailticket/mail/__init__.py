"""Pure mail handling: parse, classify, compose, and our address grammar."""
