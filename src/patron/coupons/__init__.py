"""The reward and coupon tables and the coupon machinery a sale uses: codes, the offline
tokens' format, stacking, checking and using a coupon, and coupons on a sale. Below the sale
path (patron.sales) and segments, which read these; the catalog and redeeming points for
rewards are patron.rewards, above the sale path."""
