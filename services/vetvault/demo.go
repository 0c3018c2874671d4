package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/csv"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"vetvault/identity/selfservice"
)

// runDemo signs up a made-up clinic owner, enrols TOTP, creates a clinic and
// books one clinic day from a CSV file, all through the public API as any
// client would, then prints the day's schedule.
func runDemo(ctx context.Context, args []string, out io.Writer) error {
	flags := flag.NewFlagSet("demo", flag.ContinueOnError)
	baseURL := flags.String("url", "http://127.0.0.1:8080", "base URL of a running VetVault server")
	csvPath := flags.String("csv", "../shared/data/clinic-day.csv", "CSV file of one clinic day")
	clinicName := flags.String("clinic", "Demo Veterinary Clinic", "name of the clinic to create")
	day := flags.String("date", time.Now().In(clinicTimeZone).AddDate(0, 0, 1).Format(time.DateOnly), "day to book, YYYY-MM-DD (clinic time)")
	if err := flags.Parse(args); err != nil {
		return err
	}
	date, err := time.ParseInLocation(time.DateOnly, *day, clinicTimeZone)
	if err != nil {
		return fmt.Errorf("invalid -date %q: use YYYY-MM-DD", *day)
	}
	visits, err := readClinicDay(*csvPath)
	if err != nil {
		return err
	}

	client := &http.Client{Timeout: 15 * time.Second}
	flows := selfservice.New(*baseURL+"/.ory", client)
	email := "demo-owner-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "@vetvault.test"
	token, err := flows.Register(ctx, email, rand.Text())
	if err != nil {
		return fmt.Errorf("register demo owner: %w", err)
	}
	if _, err := flows.EnrolTOTP(ctx, token); err != nil {
		return fmt.Errorf("enrol TOTP for demo owner: %w", err)
	}
	api := apiClient{base: *baseURL, token: token, http: client}

	var clinic struct {
		ID       string `json:"id"`
		Branches []struct {
			ID   string `json:"id"`
			Name string `json:"name"`
		} `json:"branches"`
	}
	err = api.call(ctx, http.MethodPost, "/v1/clinics", map[string]string{"name": *clinicName, "branch_name": visits[0].branch}, &clinic)
	if err != nil {
		return fmt.Errorf("create clinic: %w", err)
	}
	fmt.Fprintf(out, "Signed up %s, enrolled TOTP, created clinic %s.\n", email, clinic.ID)

	for i, v := range visits {
		if v.branch != visits[0].branch {
			return fmt.Errorf("row %d: branch %q: the demo books one branch only", i+2, v.branch)
		}
		body := map[string]any{
			"branch_id":        clinic.Branches[0].ID,
			"pet_name":         v.petName,
			"species":          v.species,
			"pet_parent_name":  v.petParent,
			"pet_parent_phone": v.phone,
			"starts_at":        date.Add(v.start).Format(time.RFC3339),
			"duration_minutes": v.minutes,
			"reason":           v.reason,
		}
		if err := api.call(ctx, http.MethodPost, "/v1/clinics/"+clinic.ID+"/appointments", body, nil); err != nil {
			return fmt.Errorf("book row %d: %w", i+2, err)
		}
	}

	var schedule struct {
		Appointments []struct {
			PetName         string    `json:"pet_name"`
			Species         string    `json:"species"`
			PetParentName   string    `json:"pet_parent_name"`
			StartsAt        time.Time `json:"starts_at"`
			DurationMinutes int       `json:"duration_minutes"`
			Reason          string    `json:"reason"`
		} `json:"appointments"`
	}
	if err := api.call(ctx, http.MethodGet, "/v1/clinics/"+clinic.ID+"/appointments?date="+*day, nil, &schedule); err != nil {
		return fmt.Errorf("list schedule: %w", err)
	}

	fmt.Fprintf(out, "\nSchedule for %s at %s, %s (%d appointments)\n\n", *clinicName, visits[0].branch, date.Format("Mon 2 Jan 2006"), len(schedule.Appointments))
	table := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(table, "TIME\tMIN\tPET\tSPECIES\tPET PARENT\tREASON")
	for _, a := range schedule.Appointments {
		fmt.Fprintf(table, "%s\t%d\t%s\t%s\t%s\t%s\n", a.StartsAt.In(clinicTimeZone).Format("15:04"), a.DurationMinutes, a.PetName, a.Species, a.PetParentName, a.Reason)
	}
	return table.Flush()
}

// clinicTimeZone is India Standard Time, which has no daylight saving time.
var clinicTimeZone = time.FixedZone("IST", 5*60*60+30*60)

type visit struct {
	start     time.Duration // from midnight, clinic time
	minutes   int
	petName   string
	species   string
	petParent string
	phone     string
	reason    string
	branch    string
}

// readClinicDay reads the CSV columns time, duration_min, pet_name, species,
// pet_parent, phone, reason and branch, found by header name.
func readClinicDay(path string) ([]visit, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open clinic day: %w", err)
	}
	defer file.Close()
	records, err := csv.NewReader(file).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if len(records) < 2 {
		return nil, fmt.Errorf("%s has no appointments", path)
	}

	column := map[string]int{}
	for i, name := range records[0] {
		column[strings.TrimSpace(name)] = i
	}
	for _, name := range []string{"time", "duration_min", "pet_name", "species", "pet_parent", "phone", "reason", "branch"} {
		if _, ok := column[name]; !ok {
			return nil, fmt.Errorf("%s: missing column %q", path, name)
		}
	}

	var visits []visit
	for i, record := range records[1:] {
		clock, err := time.Parse("15:04", record[column["time"]])
		if err != nil {
			return nil, fmt.Errorf("%s row %d: invalid time %q: use HH:MM", path, i+2, record[column["time"]])
		}
		minutes, err := strconv.Atoi(record[column["duration_min"]])
		if err != nil {
			return nil, fmt.Errorf("%s row %d: invalid duration_min %q", path, i+2, record[column["duration_min"]])
		}
		visits = append(visits, visit{
			start:     time.Duration(clock.Hour())*time.Hour + time.Duration(clock.Minute())*time.Minute,
			minutes:   minutes,
			petName:   record[column["pet_name"]],
			species:   record[column["species"]],
			petParent: record[column["pet_parent"]],
			phone:     record[column["phone"]],
			reason:    record[column["reason"]],
			branch:    record[column["branch"]],
		})
	}
	return visits, nil
}

// apiClient calls the VetVault API with a session token.
type apiClient struct {
	base  string
	token string
	http  *http.Client
}

func (c apiClient) call(ctx context.Context, method, path string, body, result any) error {
	var payload io.Reader
	if body != nil {
		encoded, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		payload = bytes.NewReader(encoded)
	}
	request, err := http.NewRequestWithContext(ctx, method, c.base+path, payload)
	if err != nil {
		return err
	}
	request.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		request.Header.Set("Content-Type", "application/json")
	}
	response, err := c.http.Do(request)
	if err != nil {
		return err
	}
	defer response.Body.Close()
	data, err := io.ReadAll(io.LimitReader(response.Body, 4<<20))
	if err != nil {
		return fmt.Errorf("read response: %w", err)
	}
	if response.StatusCode >= 300 {
		return fmt.Errorf("%s %s: status %d: %s", method, path, response.StatusCode, data)
	}
	if result == nil {
		return nil
	}
	if err := json.Unmarshal(data, result); err != nil {
		return errors.Join(fmt.Errorf("decode %s %s", method, path), err)
	}
	return nil
}
