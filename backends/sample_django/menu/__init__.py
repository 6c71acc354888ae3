"""The Little Lemon menu: categories and the items on them."""
