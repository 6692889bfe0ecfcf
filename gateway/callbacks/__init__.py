"""What the platform sends in: payment callbacks verified, stored and delivered."""
