"""Setting a program up: the program and its rule set, written together, and the program's routes
(the program, its stores and its branding)."""
