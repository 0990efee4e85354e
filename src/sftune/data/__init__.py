"""Data flow: readers -> Conversation -> template -> tokens and masks -> batches."""
