"""The data: its sources (synthetic, images, the user's tables), its splits and their sizes, and the prepare stage's figure of it."""
