"""A campaign as the sale path sees it: the campaign tables and the earning rules a campaign's
arm adds for its members (rule experiments). Campaign management (targeting, launch, actions,
results) is patron.campaigns, above the sale path."""
