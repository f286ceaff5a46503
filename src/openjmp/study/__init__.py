"""The embedded JMP study behind `openjmp demo`: pre-train, fine-tune in two arms, report."""
