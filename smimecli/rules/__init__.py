"""Rules: the rules file model and its validation, and the plan from recipients to certificates."""
