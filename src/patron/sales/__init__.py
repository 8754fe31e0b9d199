"""Sales: one pipeline records every sale, alone at the till or thousands in a batch.

`basket` checks what a till sent (pure); `plan` turns a snapshot of the accounts involved and a
list of sales into every row to write and every answer to give (pure); `snapshot` reads what the
planner needs, for all the sales of a batch at once; `apply` writes a plan with set-based
statements; `pipeline` runs the four in one transaction. See docs/decisions/0016-sale-pipeline.md.
"""
