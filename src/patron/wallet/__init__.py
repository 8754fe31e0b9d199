"""The member card as an Apple Wallet pass (.pkpass): a pure builder and its download endpoint."""
