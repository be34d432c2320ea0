// The pod sandbox ("pause") process, for the local pause image (kubicluster artifacts build).
module kubicluster.local/build/pause

go 1.26.0
