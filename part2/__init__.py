"""Part 2: recurrent networks — a hand-written LSTM for character-level text generation, and palindromes."""
