"""Analysis: the laws (fits, model selection, the paper's local test), the theory's constants and bounds, the
alignment tax and efficient strength, and paired statistics over items."""
