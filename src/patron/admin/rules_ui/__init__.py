"""The rule-set editor's parts below its routes (admin/views/rules.py): rules in words, the
rule form, and the differences a change makes."""
