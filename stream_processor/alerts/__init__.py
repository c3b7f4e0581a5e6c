"""Route, render and deliver alerts."""
