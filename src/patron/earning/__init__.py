"""Earning rules as an operator runs them: the rules API and CLI, rule tests checked through the
real sale path, and points for events (sign-up, birthday, review …).

Above the rule engine and its rule sets (`patron.rules`) and the sale pipeline (`patron.sales`):
both are read from here, and neither imports this package.
"""
