"""Setting a program up: the program and its rule set, written together, and its routes."""
