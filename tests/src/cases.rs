mod delivery;
mod drain;
mod handover;
mod inbox;
mod limits;
mod resets;
mod startup;
mod topics;
