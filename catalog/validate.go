package catalog

import (
	"errors"
	"fmt"
)

// Validate checks that the profile has a usable name and at least one entry,
// that every entry has destinations and ports, that they all parse with
// ParseDest and ParsePort, and that no entry lists a destination twice. It
// reports every problem found, joined.
func (p Profile) Validate() error {
	var errs []error
	if err := checkProfileName(p.Name); err != nil {
		errs = append(errs, err)
	}
	if len(p.Entries) == 0 {
		errs = append(errs, fmt.Errorf("profile %q has no entries", p.Name))
	}
	for i, e := range p.Entries {
		where := fmt.Sprintf("profile %q entry %d", p.Name, i+1)
		if len(e.Dests) == 0 {
			errs = append(errs, fmt.Errorf("%s has no destinations", where))
		}
		if len(e.Ports) == 0 {
			errs = append(errs, fmt.Errorf("%s has no ports", where))
		}
		seen := map[string]bool{}
		for _, s := range e.Dests {
			d, err := ParseDest(s)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				continue
			}
			if seen[d.String()] {
				errs = append(errs, fmt.Errorf("%s lists destination %s twice", where, d))
			}
			seen[d.String()] = true
		}
		for _, s := range e.Ports {
			if _, err := ParsePort(s); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		}
	}
	return errors.Join(errs...)
}

// checkProfileName accepts names usable as UCI option values and in nft set
// names: lower-case letters, digits, '-' and '_', starting with a letter.
func checkProfileName(name string) error {
	if name == "" {
		return errors.New("profile name is empty")
	}
	if len(name) > 32 {
		return fmt.Errorf("profile name %q is longer than 32 characters", name)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '_')
		if !ok {
			return fmt.Errorf("profile name %q: want lower-case letters, digits, '-' or '_', starting with a letter", name)
		}
	}
	return nil
}
