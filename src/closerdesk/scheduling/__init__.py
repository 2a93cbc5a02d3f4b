"""Pure scheduling core: interval maths, availability, slots, round robin. No I/O."""
