"""Pure: the diff of desired against observed state, as ordered, batched operations."""
