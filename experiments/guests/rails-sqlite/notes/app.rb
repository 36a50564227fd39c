# Notes: a one-file Rails app on SQLite, from Debian's own Rails, sqlite3 and puma.
# GET / records a visit and lists the notes; POST /notes adds one.
require "rails"
require "active_record/railtie"
require "action_controller/railtie"

class NotesApp < Rails::Application
  config.root = __dir__
  config.eager_load = true
  config.logger = Logger.new($stdout)
  config.log_level = :warn
  config.hosts.clear # reached through a forwarded port under any host name
  # A lab guest holds no secrets; Rails refuses to start in production without one.
  config.secret_key_base = "chronicle-lab-guest-not-secret"
end

Rails.application.initialize!

Rails.application.routes.draw do
  root "notes#index"
  post "/notes", to: "notes#create"
end

# The schema lives here rather than in migrations: two tables, made on first start.
ActiveRecord::Schema.define do
  create_table :notes, if_not_exists: true do |t|
    t.text :body, null: false
    t.timestamps
  end
  create_table :visits, if_not_exists: true do |t|
    t.string :path, null: false
    t.timestamps
  end
end

class Note < ActiveRecord::Base
  validates :body, presence: true, length: { maximum: 500 }
end

class Visit < ActiveRecord::Base
end

class NotesController < ActionController::Base
  def index
    Visit.create!(path: request.path)
    items = Note.order(created_at: :desc).limit(20).map { |n| "<li>#{ERB::Util.h(n.body)}</li>" }
    render html: <<~HTML.html_safe
      <!doctype html>
      <title>Notes</title>
      <p>#{Visit.count} visits, #{Note.count} notes.</p>
      <form method="post" action="/notes"><input name="body"><button>Add</button></form>
      <ul>#{items.join}</ul>
    HTML
  end

  def create
    Note.create!(body: params.require(:body))
    redirect_to root_path
  end
end
