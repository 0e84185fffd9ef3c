// The Go peer of `cargo xtask bench --only service`: the tasks API's three benchmarked routes as a
// Go team would write them in an afternoon, with the standard library and the usual MySQL driver.
// It is the yardstick the service is measured against (docs/BENCHMARKS.md), so it stays plain: no
// metrics, request ids, timeouts or logs, and no tuning beyond a pool of 16 connections.
//
// Built by the bench with Debian's Go 1.19 in GOPATH mode (GO111MODULE=off,
// GOPATH=/usr/share/gocode, where golang-github-go-sql-driver-mysql-dev puts the driver), so nothing
// is downloaded. It serves a table that `challenge migrate --seed` created and filled.
//
// Configuration: DB_HOST, DB_PORT, DB_DATABASE, DB_USERNAME, DB_PASSWORD, PORT.
package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

type Task struct {
	ID          uint64    `json:"id"`
	Title       string    `json:"title"`
	Description *string   `json:"description"`
	Done        bool      `json:"done"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

type Page struct {
	Items []Task  `json:"items"`
	Next  *uint64 `json:"next"`
}

type server struct {
	db      *sql.DB
	getOne  *sql.Stmt
	getPage *sql.Stmt
	insert  *sql.Stmt
}

func main() {
	cfg := mysql.NewConfig()
	cfg.User = os.Getenv("DB_USERNAME")
	cfg.Passwd = os.Getenv("DB_PASSWORD")
	cfg.Net = "tcp"
	cfg.Addr = os.Getenv("DB_HOST") + ":" + os.Getenv("DB_PORT")
	cfg.DBName = os.Getenv("DB_DATABASE")
	cfg.ParseTime = true
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	db.SetMaxOpenConns(16)
	db.SetMaxIdleConns(16)

	s := &server{db: db}
	s.getOne = prepare(db, "SELECT id, title, description, done, created_at, updated_at FROM tasks WHERE id = ?")
	s.getPage = prepare(db, "SELECT id, title, description, done, created_at, updated_at FROM tasks WHERE id > ? ORDER BY id LIMIT ?")
	s.insert = prepare(db, "INSERT INTO tasks (title, description, done, created_at, updated_at) VALUES (?, ?, ?, ?, ?)")

	http.HandleFunc("/api/tasks", s.tasks)
	http.HandleFunc("/api/tasks/", s.task)
	if err := http.ListenAndServe(":"+os.Getenv("PORT"), nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func prepare(db *sql.DB, query string) *sql.Stmt {
	stmt, err := db.Prepare(query)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	return stmt
}

// GET /api/tasks/{id}
func (s *server) task(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	id, err := strconv.ParseUint(strings.TrimPrefix(r.URL.Path, "/api/tasks/"), 10, 64)
	if err != nil {
		http.Error(w, "bad id", http.StatusBadRequest)
		return
	}
	var t Task
	err = s.getOne.QueryRow(id).Scan(&t.ID, &t.Title, &t.Description, &t.Done, &t.CreatedAt, &t.UpdatedAt)
	if err == sql.ErrNoRows {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(t)
}

// GET /api/tasks?limit=N&after=ID and POST /api/tasks
func (s *server) tasks(w http.ResponseWriter, r *http.Request) {
	switch r.Method {
	case http.MethodGet:
		s.list(w, r)
	case http.MethodPost:
		s.create(w, r)
	default:
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	limit := uint64(20)
	after := uint64(0)
	var err error
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		limit, err = strconv.ParseUint(v, 10, 16)
		if err != nil || limit < 1 || limit > 100 {
			http.Error(w, "bad limit", http.StatusBadRequest)
			return
		}
	}
	if v := q.Get("after"); v != "" {
		after, err = strconv.ParseUint(v, 10, 64)
		if err != nil {
			http.Error(w, "bad after", http.StatusBadRequest)
			return
		}
	}
	// One row more than the page tells whether a next page exists.
	rows, err := s.getPage.Query(after, limit+1)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer rows.Close()
	page := Page{Items: []Task{}}
	for rows.Next() {
		var t Task
		if err := rows.Scan(&t.ID, &t.Title, &t.Description, &t.Done, &t.CreatedAt, &t.UpdatedAt); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		page.Items = append(page.Items, t)
	}
	if err := rows.Err(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if uint64(len(page.Items)) > limit {
		page.Items = page.Items[:limit]
		next := page.Items[limit-1].ID
		page.Next = &next
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(page)
}

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Title       string  `json:"title"`
		Description *string `json:"description"`
		Done        bool    `json:"done"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	in.Title = strings.TrimSpace(in.Title)
	if in.Title == "" || len([]rune(in.Title)) > 200 {
		http.Error(w, "title must be 1 to 200 characters", http.StatusUnprocessableEntity)
		return
	}
	// The column keeps microseconds: the answer shows what is stored.
	now := time.Now().UTC().Truncate(time.Microsecond)
	res, err := s.insert.Exec(in.Title, in.Description, in.Done, now, now)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	id, err := res.LastInsertId()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	t := Task{ID: uint64(id), Title: in.Title, Description: in.Description, Done: in.Done, CreatedAt: now, UpdatedAt: now}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Location", "/api/tasks/"+strconv.FormatInt(id, 10))
	w.WriteHeader(http.StatusCreated)
	json.NewEncoder(w).Encode(t)
}
