"""The SQL migrations, shipped inside the distribution so an installed image finds them."""
